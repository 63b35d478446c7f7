"""Stage checked rows into temporary Parquet files, one per date, in bounded memory.

Nothing here is visible in the archive until :meth:`DateFiles.publish`: every file is
written under a ``.tmp-`` name in the storage's staging folder and published only once
the whole report has been read, so a file refused at its last byte leaves no data behind.

Rows arrive in batches of the file. Two ways to go, chosen by the rows themselves:

* in time order (the usual export): each batch is one date, or two at midnight, and is
  sliced by date (no copy). Each date's rows are buffered; past the memory budget the
  dates touched longest ago (then the biggest) are flushed by a writer thread, sorted by
  (timestamp, row number), straight into the date's Parquet file as a row group;
* in no order (the first batch whose dates change more than a few times: every batch
  then touches every date): batches are no longer split at all. Each half budget's worth
  is sorted once, in the writer thread, by (date, timestamp, row number), and each date's
  slice appended to one Arrow IPC spill file as a sorted *run* (no Parquet encoding, no
  compression: close to a memory copy). At the end every such date is merged from its
  runs (and its in-order part, if any) into one sorted Parquet file, a row group at a
  time: the runs are sorted, so a row group takes a contiguous range of each run, and
  memory stays at a row group plus one batch per run. Merges run in two threads.

A few rows out of order in an otherwise ordered export become runs of their date only.
Either way a date ends as one file, sorted by timestamp (equal timestamps in file
order), in row groups of a useful size: never one tiny row group per batch per date.

Example::

    files = DateFiles(root, "bot-1", budget=32 << 20, source_kind="csv")
    files.add(good, days)   # Arrow table in STAGE_SCHEMA, its date column in polars
    files.finish()
    written = files.publish(sha)
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from ingest.archive.commit import WrittenFile
from ingest.archive.layout import part_name, partition_key
from ingest.archive.sortedruns import IpcRun, ParquetPart, RowSource, Run, merge_to_parquet
from ingest.archive.storage import Storage, as_storage, sha256_file
from ingest.parse.arrowrows import FILE_SCHEMA, int64_numpy, parquet_writer, stamp, text_scalar
from ingest.parse.validate import ROW_NUMBER

#: Open Parquet writers at most (file descriptors); the least recently used is closed
#: and its date, should it get rows again, continues as runs in the spill file.
MAX_OPEN_WRITERS = 128
#: Flushed tables waiting for the writer thread, at most.
MAX_PENDING_WRITES = 2
#: Dates merged at once at the end (each holds a row group and a batch per run).
MERGE_THREADS = 2
#: The columns a spilled run keeps: the message columns and ``extra``; provenance is
#: added when merging (the same stand-in for every row).
_SPILL_SCHEMA = pa.schema([FILE_SCHEMA.field(n) for n in FILE_SCHEMA.names[:-2]])


@dataclass
class _Date:
    """One date's buffered rows, its in-order Parquet file, and its spilled runs."""

    folder: str  # the partition's key prefix
    buffers: list[pa.Table] = field(default_factory=list)
    size: int = 0
    touched: int = 0
    direct: Path | None = None  # rows flushed in order, as Parquet row groups
    writer: pq.ParquetWriter | None = None  # open on ``direct`` (None once closed)
    direct_rows: int = 0
    runs: list[Run] = field(default_factory=list)
    spilled_bytes: int = 0
    final: Path | None = None  # the file to publish (``direct``, or the merge of everything)
    rows: int = 0
    last_ts: int | None = None  # microseconds since the epoch


def _by_date(good: pa.Table, days: pl.Series) -> list[tuple[date, pa.Table]]:
    """Split a batch by date, each date's rows in file order.

    Exports are in time order: a batch is one date, or two at midnight, in runs that
    are sliced (no copy). Rows in no order are grouped with one stable sort of the row
    indices by date and one ``take``, then sliced: a pass per batch, not one per date.
    """
    low, high = days.min(), days.max()
    assert isinstance(low, date) and isinstance(high, date)
    if low == high:
        return [(low, good)]
    runs = days.rle().struct.unnest()  # (len, value) per run
    if runs.height > _MAX_SLICES and runs.height > days.n_unique():  # a date in several runs
        order = pc.sort_indices(days.to_arrow())  # Arrow's sort is stable: file order kept
        good = good.take(order)
        runs = days.gather(pl.from_arrow(order)).rle().struct.unnest()  # type: ignore[arg-type]  # from_arrow of an Array is a Series
    parts, start = [], 0
    for length, day in runs.iter_rows():
        parts.append((day, good.slice(start, length)))
        start += length
    return parts


#: A batch split in more runs than this is grouped by a sort instead of sliced as it is.
_MAX_SLICES = 8


class DateFiles:
    """Per-date buffers, in-order Parquet files and spilled runs for one report."""

    def __init__(self, root: Storage | Path, bot_id: str, *, budget: int, source_kind: str) -> None:
        self.storage = as_storage(root)
        self.bot_id = bot_id
        self.budget = budget
        self.source_kind = source_kind
        # Rows carry source_sha256, but the hash is only known once the whole file is read:
        # they are written with this stand-in of the same length, stamped at publish time.
        self.placeholder = secrets.token_hex(32)
        self._placeholder = text_scalar(self.placeholder)
        self._kind = text_scalar(source_kind)
        self.duplicates = 0  # kept for the commit's sum: ids are settled before staging
        self.token = uuid.uuid4().hex[:8]
        self._dates: dict[date, _Date] = {}
        self._size = 0
        self._tick = 0
        self._open: dict[date, None] = {}  # dates with an open writer, least recent first
        self._spill_path: Path | None = None
        self._spill: ipc.RecordBatchFileWriter | None = None
        self._spill_sink: pa.NativeFile | None = None
        self._spill_batches = 0
        self._row_bytes = 1024
        self._shuffled = False  # rows seen in no time order: rounds, not per-date buffers
        self._mixed: list[pa.Table] = []
        self._mixed_size = 0
        # Parquet encoding is the biggest single cost: it runs in its own thread (pyarrow
        # releases the GIL) while this one checks the next batches.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parquet-writer")
        self._pending: deque[Future[None]] = deque()

    def add(self, good: pa.Table, days: pl.Series) -> None:
        """Buffer checked, deduplicated rows (STAGE_SCHEMA) and their ``date`` column as
        a polars Series; flush dates once the buffers pass the budget."""
        if good.num_rows == 0:
            return
        self._tick += 1
        # The buffers' own size: Table.nbytes walks every chunk's offsets (0.2 ms a call).
        size = good.get_total_buffer_size()
        self._row_bytes = max(1, size // good.num_rows)  # sizes the merge's row groups
        # Rows in time order make one run per date, however many dates a batch has (a
        # sparse export); a shuffled one makes many more runs than dates.
        if not self._shuffled and days.rle_id().max() - days.n_unique() >= _MAX_SLICES:  # type: ignore[operator]  # max() of ints is an int
            # Rows in no time order: every batch touches every date. From here on batches
            # are not split by date at all; each budget's worth is sorted once by (date,
            # timestamp, row) and spilled as one run per date (see _write_round).
            self._shuffled = True
            for day in sorted(self._dates):
                self._flush(day)
        if self._shuffled:
            self._mixed.append(good)
            self._mixed_size += size
            # Half the budget a round: one round is buffered here while the writer thread
            # sorts the previous one (its input and its sorted copy both in memory).
            if self._mixed_size > self.budget // 2:
                self._flush_round()
            return
        for day, part in _by_date(good, days):
            state = self._date(day)
            share = size * part.num_rows // good.num_rows
            state.buffers.append(part)
            state.size += share
            state.touched = self._tick
            self._size += share
        if self._size > self.budget:
            # Stalest first (in a time-ordered export: the dates already complete), then
            # the biggest.
            for day in sorted(self._dates, key=lambda d: (self._dates[d].touched, -self._dates[d].size)):
                if self._size <= self.budget // 2:
                    break
                self._flush(day)

    def _date(self, day: date) -> _Date:
        state = self._dates.get(day)
        if state is None:
            state = self._dates[day] = _Date(partition_key(self.bot_id, day))
        return state

    def _flush_round(self) -> None:
        """Hand the shuffled rows buffered so far to the writer thread, as one round."""
        if not self._mixed:
            return
        table = pa.concat_tables(self._mixed)
        self._mixed, self._mixed_size = [], 0
        self._drain(MAX_PENDING_WRITES - 1)
        self._pending.append(self._pool.submit(self._write_round, table))

    def _write_round(self, table: pa.Table) -> None:
        """Sort a round by (date, timestamp, row); each date's slice becomes a run."""
        keys = pl.from_arrow(table.select(["date", "timestamp", ROW_NUMBER]))
        assert isinstance(keys, pl.DataFrame)
        table = table.take(
            keys.select(pl.arg_sort_by("date", "timestamp", ROW_NUMBER)).to_series().to_arrow()
        )
        days = pl.from_arrow(table.column("date"))
        assert isinstance(days, pl.Series)
        start = 0
        for length, day in days.rle().struct.unnest().iter_rows():
            self._stage(day, self._date(day), table.slice(start, length), new_file=False)
            start += length

    def finish(self) -> None:
        """Flush every buffer, close every writer, merge the dates that have runs."""
        self._flush_round()
        for day in sorted(self._dates):
            self._flush(day, complete=True)
        self._drain(0)
        for day in list(self._open):
            self._close(day)
        if self._spill is not None:
            self._spill.close()
            assert self._spill_sink is not None
            self._spill_sink.close()
            self._spill = self._spill_sink = None
        merging = [day for day in sorted(self._dates) if self._dates[day].runs]
        for state in self._dates.values():
            if not state.runs:
                state.final = state.direct
        if merging:
            with ThreadPoolExecutor(max_workers=MERGE_THREADS, thread_name_prefix="merge") as pool:
                list(pool.map(self._merge, merging))  # raises what a merge met
        if self._spill_path is not None:
            with suppress(OSError):
                self._spill_path.unlink(missing_ok=True)

    def _flush(self, day: date, complete: bool = False) -> None:
        state = self._dates[day]
        if not state.buffers:
            return
        table = pa.concat_tables(state.buffers)
        self._size -= state.size
        # A new file for a date whose rows look like all of it (no batch touched it last:
        # a time-ordered export moved on) or a big part of it; a sliver is better spilled.
        new_file = complete or state.touched < self._tick or state.size >= self.budget // 8
        state.buffers, state.size = [], 0
        self._drain(MAX_PENDING_WRITES - 1)  # bounded: what waits is memory too
        self._pending.append(self._pool.submit(self._write, day, table, new_file))

    def _drain(self, left: int) -> None:
        """Wait until at most ``left`` writes are pending; raise what a write met."""
        while len(self._pending) > left:
            self._pending.popleft().result()

    def _write(self, day: date, table: pa.Table, new_file: bool) -> None:
        """Sort, drop ids the partition has; then a row group, or a run in the spill."""
        state = self._dates[day]
        # Rows are in file order; sorting by timestamp keeps that order among equal ones.
        stamps = pl.from_arrow(table.column("timestamp"))
        assert isinstance(stamps, pl.Series)
        if not stamps.is_sorted():
            order = pl.DataFrame({"t": stamps, "r": pl.from_arrow(table.column(ROW_NUMBER))})
            table = table.take(order.select(pl.arg_sort_by("t", "r")).to_series().to_arrow())
        self._stage(day, state, table, new_file)

    def _stage(self, day: date, state: _Date, table: pa.Table, new_file: bool) -> None:
        """Sorted rows of one date: a row group (in
        order, and the date has an open file, or ``new_file`` may start one), or a run."""
        # Ids the bot's archive holds (on any date) never get here: ingest.archive.stream sets
        # them aside (ingest.archive.conflicts), so nothing is filtered per partition.
        if table.num_rows == 0:
            return
        # As microseconds: TimestampScalar.as_py() would import pandas (0.3 s, once).
        micros = table.column("timestamp").cast(pa.int64())
        first, last = (v.as_py() for v in pc.min_max(micros).values())
        rows = table.num_rows
        in_order = not state.runs and (state.last_ts is None or first >= state.last_ts)
        can_append = state.writer is not None or (state.direct is None and new_file)
        state.last_ts = max(last, state.last_ts) if state.last_ts is not None else last
        state.rows += rows
        if in_order and can_append:
            self._writer(day, state).write_table(self._with_provenance(table.select(_SPILL_SCHEMA.names)))
            state.direct_rows += rows
            return
        self._spill_run(state, table.select(_SPILL_SCHEMA.names), micros)

    def _with_provenance(self, table: pa.Table) -> pa.Table:
        """Message columns and ``extra`` -> FILE_SCHEMA: the stand-in hash and the kind."""
        rows = table.num_rows
        return table.append_column(
            FILE_SCHEMA.field("source_sha256"), pa.repeat(self._placeholder, rows)
        ).append_column(FILE_SCHEMA.field("source_kind"), pa.repeat(self._kind, rows))

    def _spill_run(self, state: _Date, table: pa.Table, micros: pa.ChunkedArray) -> None:
        """Append sorted rows of one date to the spill file, as one run."""
        if self._spill is None:
            self._spill_path = self.storage.temp("spill.arrow", f"{self.token}-")
            self._spill_sink = pa.OSFile(str(self._spill_path), "wb")
            self._spill = ipc.new_file(self._spill_sink, _SPILL_SCHEMA)
        batches = table.to_batches()
        for batch in batches:
            self._spill.write_batch(batch)
        # The timestamps as numpy, read from the buffers (to_numpy would import pandas).
        state.runs.append(Run(self._spill_batches, len(batches), table.num_rows, int64_numpy(micros)))
        state.spilled_bytes += table.num_rows * self._row_bytes
        self._spill_batches += len(batches)

    def _merge(self, day: date) -> None:
        """One sorted Parquet file from a date's in-order part and its runs (in that order,
        the runs as flushed: file order), merged by :func:`merge_to_parquet`."""
        state = self._dates[day]
        assert self._spill_path is not None
        sources: list[RowSource] = []
        stamps: list[np.ndarray] = []
        if state.direct is not None:
            sources.append(ParquetPart(state.direct))
            # ParquetFile, not pq.read_table: that one imports pyarrow.dataset, and pandas.
            stamps.append(
                int64_numpy(
                    pq.ParquetFile(state.direct).read(columns=["timestamp"]).column(0).cast(pa.int64())
                )
            )
        spill = pa.OSFile(str(self._spill_path))
        reader = ipc.open_file(spill)  # one per merge: reads (pread) into memory, a batch at a time
        for run in state.runs:
            sources.append(IpcRun(reader, run, self._with_provenance))
            stamps.append(run.stamps)
        spilled_rows = sum(run.rows for run in state.runs)
        row_bytes = max(1, state.spilled_bytes // max(1, spilled_rows))
        group = max(1024, (self.budget // 2) // row_bytes)
        path = self.storage.temp("sorted.parquet", f"{self.token}-")
        merge_to_parquet(sources, stamps, group, path)
        spill.close()
        if state.direct is not None:
            state.direct.unlink(missing_ok=True)
        state.final = path
        state.runs = []

    def _writer(self, day: date, state: _Date) -> pq.ParquetWriter:
        if state.writer is None:
            if len(self._open) >= MAX_OPEN_WRITERS:
                self._close(next(iter(self._open)))
            state.direct = self.storage.temp("0.parquet", f"{self.token}-")
            state.writer = parquet_writer(state.direct, FILE_SCHEMA)
        self._open.pop(day, None)
        self._open[day] = None  # most recently used last
        return state.writer

    def _close(self, day: date) -> None:
        state = self._dates[day]
        if state.writer is not None:
            state.writer.close()
            state.writer = None
        self._open.pop(day, None)

    @property
    def rows(self) -> int:
        """Rows in the temporary files."""
        return sum(state.rows for state in self._dates.values())

    def publish(self, sha: str) -> list[WrittenFile]:
        """Publish each date's file as part-<sha16>.parquet, dates in order."""
        days = [day for day in sorted(self._dates) if self._dates[day].rows]
        # Stamp, hash, fsync, link, fsync the folder: per file, mostly disk waits, so a few
        # threads (a year's report is 365 files; one by one, most of its commit). All are
        # durable before the commit; a crash leaves any subset, which a re-run records.
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="publish") as pool:
            written = list(pool.map(lambda day: self._publish(day, sha), days))
        self.discard()
        return written

    def _publish(self, day: date, sha: str) -> WrittenFile:
        state = self._dates[day]
        digest = self._seal(self._final(day), sha)
        target = f"{state.folder}/{part_name(sha)}"
        if not self.storage.publish(self._final(day), target):  # it exists: record it as is
            digest = self.storage.sha256(target) or ""
        return WrittenFile(target, state.rows, digest)

    def staged_paths(self) -> list[Path]:
        """Every date's finished temporary file (after :meth:`finish`)."""
        return [state.final for state in self._dates.values() if state.final is not None and state.rows]

    def _final(self, day: date) -> Path:
        final = self._dates[day].final
        assert final is not None, "finish() first"
        return final

    def _seal(self, path: Path, sha: str) -> str:
        """Stamp a date's final temporary file, make it durable; its sha256."""
        stamp(path, self.placeholder, sha)
        with path.open("rb+") as stream:
            os.fsync(stream.fileno())
        return sha256_file(path)

    def discard(self) -> None:
        """Remove every temporary file (after publishing, or instead of it)."""
        for future in self._pending:
            future.cancel()
        wait(self._pending)
        self._pending.clear()
        self._pool.shutdown(wait=True)
        for day in list(self._open):
            with suppress(OSError):
                self._close(day)
        if self._spill is not None:
            with suppress(OSError):
                self._spill.close()
            self._spill = None
        if self._spill_sink is not None:
            with suppress(OSError):
                self._spill_sink.close()
            self._spill_sink = None
        paths = [self._spill_path] + [
            p for state in self._dates.values() for p in (state.direct, state.final)
        ]
        for path in paths:
            if path is not None:
                with suppress(OSError):  # cleaning up must not hide the error that got us here
                    path.unlink(missing_ok=True)
