"""Sorted runs of one date and their merge into one sorted Parquet file, a row group at
a time (:class:`ingest.archive.staging.DateFiles`, for rows that arrive in no order).

A date's rows may sit in an in-order Parquet part and in runs of an Arrow IPC spill file,
each sorted by (timestamp, row number); the merge reads a contiguous range of each per
row group, so memory stays at a row group plus one batch per source.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from ingest.parse.arrowrows import FILE_SCHEMA, indices_array, int64_numpy, parquet_writer


@dataclass
class Run:
    """Sorted rows of one date in the spill file: batches ``first`` .. ``first + count``."""

    first: int
    count: int
    rows: int
    stamps: np.ndarray  # timestamps (microseconds), to plan the merge without reading the rows


class RowSource:
    """Rows of one date, sorted, read in order a range at a time (FILE_SCHEMA)."""

    def take(self, rows: int) -> pa.Table:
        raise NotImplementedError


class ParquetPart(RowSource):
    """The date's in-order part: its Parquet file, a row group at a time."""

    def __init__(self, path: Path) -> None:
        self._file = pq.ParquetFile(path)
        self._group = 0
        self._held: pa.Table | None = None

    def take(self, rows: int) -> pa.Table:
        pieces: list[pa.Table] = []
        while rows:
            if self._held is None or self._held.num_rows == 0:
                self._held = self._file.read_row_group(self._group)
                self._group += 1
            piece = self._held.slice(0, rows)
            self._held = self._held.slice(piece.num_rows)
            pieces.append(piece)
            rows -= piece.num_rows
        return pa.concat_tables(pieces)


class IpcRun(RowSource):
    """One run in the spill file, a batch at a time, with provenance added."""

    def __init__(
        self, reader: ipc.RecordBatchFileReader, run: Run, provenance: Callable[[pa.Table], pa.Table]
    ) -> None:
        self._reader = reader
        self._next = run.first
        self._end = run.first + run.count
        self._held: pa.Table | None = None
        self._provenance = provenance

    def take(self, rows: int) -> pa.Table:
        pieces: list[pa.Table] = []
        while rows:
            if self._held is None or self._held.num_rows == 0:
                assert self._next < self._end
                self._held = pa.Table.from_batches([self._reader.get_batch(self._next)])
                self._next += 1
            piece = self._held.slice(0, rows)
            self._held = self._held.slice(piece.num_rows)
            pieces.append(piece)
            rows -= piece.num_rows
        return self._provenance(pa.concat_tables(pieces))


def merge_to_parquet(sources: list[RowSource], stamps: list[np.ndarray], group: int, path: Path) -> None:
    """Write the rows of ``sources`` to ``path`` in timestamp order, ``group`` rows per row
    group. ``stamps`` are each source's timestamps, in the source's order.

    Every source is sorted by (timestamp, row number), and the sources are in file order;
    a stable sort of all the timestamps, source by source, is the date's order. A row
    group of that order takes a contiguous range from each source: read those, sort them
    (stably, sources in order), write. Memory: a row group plus one batch per source.
    """
    where = np.repeat(np.arange(len(sources), dtype=np.int32), [len(t) for t in stamps])
    where = where[np.argsort(np.concatenate(stamps), kind="stable")]
    with parquet_writer(path, FILE_SCHEMA) as out:
        for start in range(0, len(where), group):
            counts = np.bincount(where[start : start + group], minlength=len(sources))
            pieces = [source.take(int(n)) for source, n in zip(sources, counts, strict=True) if n]
            table = pa.concat_tables(pieces)
            keys = int64_numpy(table.column("timestamp").cast(pa.int64()))
            if not (keys[1:] >= keys[:-1]).all():
                table = table.take(indices_array(np.argsort(keys, kind="stable")))
            out.write_table(table)
