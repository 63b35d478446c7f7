"""Duplicate ids within one report, found in bounded memory.

Example::

    ids = IdSet()
    first = ids.first_seen(batch_ids)   # False for an id an earlier row already had
"""

from __future__ import annotations

import polars as pl


class IdSet:
    """The ids seen so far in one report, in a few sorted runs (8 bytes an id).

    A Python set would take about 60 bytes an id; runs merge like a binary counter, so
    a lookup searches at most log2(batches) runs.
    """

    def __init__(self) -> None:
        self._runs: list[pl.Series] = []

    def first_seen(self, ids: pl.Series) -> pl.Series:
        """True where an id is seen for the first time (earlier batches and this one)."""
        first = ids.is_first_distinct()
        if ids.len() == 0:
            return first
        low, high = ids.min(), ids.max()
        for run in self._runs:
            # Exports number rows in time order: most runs cannot hold any of these ids.
            if run[0] > high or run[-1] < low:
                continue
            at = run.search_sorted(ids).cast(pl.Int64)
            hit = (at < run.len()) & (run.gather(at.clip(0, run.len() - 1)) == ids)
            first = first & ~hit
        new = ids.filter(first).sort()
        if new.len():
            self._runs.append(new)
            while len(self._runs) > 1 and self._runs[-2].len() <= 2 * self._runs[-1].len():
                last = self._runs.pop()
                self._runs[-1] = pl.concat([self._runs[-1], last]).sort()
        return first
