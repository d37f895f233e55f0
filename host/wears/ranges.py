"""A set of integers kept as sorted disjoint ranges: the flash log records a host holds."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator


class RangeSet:
    """Integers as sorted, disjoint, non-adjacent half-open ranges [start, end).

    Example:
        >>> s = RangeSet([1, 2, 3, 7])
        >>> list(s.missing(0, 9))
        [(0, 1), (4, 7), (8, 9)]
    """

    def __init__(self, values: Iterable[int] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        for v in values:
            self.add(v)

    def __contains__(self, value: int) -> bool:
        i = bisect.bisect_right(self._starts, value) - 1
        return i >= 0 and value < self._ends[i]

    def __len__(self) -> int:
        return sum(e - s for s, e in zip(self._starts, self._ends))

    def ranges(self) -> list[tuple[int, int]]:
        return list(zip(self._starts, self._ends))

    def add(self, value: int) -> bool:
        """Add one integer; False if it was there already."""
        return self.add_range(value, value + 1) > 0

    def add_range(self, start: int, end: int) -> int:
        """Add [start, end); returns how many integers were new."""
        if end <= start:
            return 0
        before = len(self)
        i = bisect.bisect_left(self._ends, start)  # the first range that ends at or after start
        j = bisect.bisect_right(self._starts, end)  # ranges from i to j-1 touch [start, end)
        if i < j:
            start = min(start, self._starts[i])
            end = max(end, self._ends[j - 1])
        self._starts[i:j] = [start]
        self._ends[i:j] = [end]
        return len(self) - before

    def missing(self, start: int, end: int) -> Iterator[tuple[int, int]]:
        """The ranges inside [start, end) that are not in the set."""
        at = start
        i = max(0, bisect.bisect_right(self._starts, start) - 1)
        for s, e in zip(self._starts[i:], self._ends[i:]):
            if s >= end:
                break
            if s > at:
                yield at, min(s, end)
            at = max(at, e)
        if at < end:
            yield at, end

    def first_missing(self, start: int) -> int:
        """The smallest integer >= start that is not in the set."""
        i = bisect.bisect_right(self._starts, start) - 1
        return self._ends[i] if i >= 0 and start < self._ends[i] else start
