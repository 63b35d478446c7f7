"""Duplicate ids within one report, found in bounded memory.

Example::

    ids = IdSet()
    first = ids.first_seen(batch_ids)   # False for an id an earlier row already had
"""

from __future__ import annotations

import numpy as np
import polars as pl


class IdSet:
    """The ids seen so far in one report, in a few sorted runs (8 bytes an id).

    A Python set would take about 60 bytes an id; runs merge like a binary counter, so
    a lookup searches at most log2(batches) runs. numpy: ``searchsorted`` and a stable
    sort of two sorted runs (a merge, linear) cost a fraction of polars' per-call
    overhead on the batch sizes the stream uses (thousands of ids).
    """

    def __init__(self) -> None:
        self._runs: list[np.ndarray] = []

    def first_seen(self, ids: pl.Series) -> pl.Series:
        """True where an id is seen for the first time (earlier batches and this one)."""
        first = ids.is_first_distinct()
        if ids.len() == 0:
            return first
        values = ids.to_numpy()
        if ids.null_count():  # nulls never reach here from the stream (ids are required)
            raise ValueError("ids must not be null")
        seen = np.zeros(len(values), dtype=bool)
        low, high = values.min(), values.max()
        order: np.ndarray | None = None
        for run in self._runs:
            # Exports number rows in time order: most runs cannot hold any of these ids.
            if run[0] > high or run[-1] < low:
                continue
            if order is None:  # sorted queries search several times faster (cache)
                order = np.argsort(values)
                queries = values[order]
            at = np.searchsorted(run, queries)
            seen[order] |= run[np.minimum(at, len(run) - 1)] == queries
        if seen.any():
            first = first & pl.Series(~seen)
        new = np.sort(values[first.to_numpy()])
        if len(new):
            self._runs.append(new)
            while len(self._runs) > 1 and len(self._runs[-2]) <= 2 * len(self._runs[-1]):
                last = self._runs.pop()
                self._runs[-1] = np.sort(np.concatenate([self._runs[-1], last]), kind="stable")
        return first
