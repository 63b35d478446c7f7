"""Stage checked rows into temporary Parquet files, one per date, in bounded memory.

Nothing here is visible in the archive until :meth:`DateFiles.publish`: every file is
written under a ``.tmp-`` name in the storage's staging folder and published only once
the whole report has been read, so a file refused at its last byte leaves no data behind.

Rows of each date are buffered; when the buffers pass the memory budget, the dates
touched longest ago are flushed (by a writer thread) as row groups into their date's
file, sorted by (timestamp, row number), without the ids the partition already has. Exports arrive in time order, so a date is normally complete
when it is flushed and its file is one sorted row group. If a date's rows come back
after it was flushed, or out of time order, its file is rebuilt sorted at publish time
(that rebuild holds the one date in memory).

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

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ingest.arrowrows import FILE_SCHEMA, parquet_writer, stamp, text_scalar
from ingest.validate import ROW_NUMBER
from ingest.storage import Storage, as_storage
from ingest.writer import WrittenFile, existing_ids, partition_key, sha256_file

#: Open Parquet writers at most (file descriptors); the least recently used is closed
#: and its date, should it get rows again, continues in a second temporary file.
MAX_OPEN_WRITERS = 128
#: Flushed tables waiting for the writer thread, at most.
MAX_PENDING_WRITES = 2


@dataclass
class _Date:
    """One date's buffered rows and temporary file(s)."""

    folder: str  # the partition's key prefix
    buffers: list[pa.Table] = field(default_factory=list)
    size: int = 0
    touched: int = 0
    existing: pa.Array | None = None
    segments: list[Path] = field(default_factory=list)
    writer: pq.ParquetWriter | None = None
    rows: int = 0
    last_ts: int | None = None  # microseconds since the epoch
    unsorted: bool = False


def _by_date(good: pa.Table, days: pl.Series) -> list[tuple[date, pa.Table]]:
    """Split a batch by date. Exports are in time order: a batch is one date, or two
    at midnight, in runs that are sliced (no copy); rows in no order are filtered."""
    low, high = days.min(), days.max()
    assert isinstance(low, date) and isinstance(high, date)
    if low == high:
        return [(low, good)]
    runs = days.rle().struct.unnest()  # (len, value) per run
    if runs.height <= _MAX_SLICES:
        parts, start = [], 0
        for length, day in runs.iter_rows():
            parts.append((day, good.slice(start, length)))
            start += length
        return parts
    return [(day, good.filter((days == day).to_arrow())) for day in days.unique().sort()]


#: A batch split in more runs than this is filtered by date instead of sliced.
_MAX_SLICES = 8


class DateFiles:
    """Per-date buffers and temporary Parquet files for one report."""

    def __init__(self, root: Storage | Path, bot_id: str, *, budget: int,
                 source_kind: str) -> None:
        self.out = as_storage(root)
        self.bot_id = bot_id
        self.budget = budget
        self.source_kind = source_kind
        # Rows carry source_sha256, but the hash is only known once the whole file is read:
        # they are written with this stand-in of the same length, stamped at publish time.
        self.placeholder = secrets.token_hex(32)
        self.duplicates = 0  # rows whose id the partition already had
        self.token = uuid.uuid4().hex[:8]
        self._dates: dict[date, _Date] = {}
        self._size = 0
        self._tick = 0
        self._open: dict[date, None] = {}  # dates with an open writer, least recent first
        # Parquet encoding is the biggest single cost: it runs in its own thread (pyarrow
        # releases the GIL) while this one checks the next batches.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parquet-writer")
        self._pending: deque[Future[None]] = deque()

    def add(self, good: pa.Table, days: pl.Series) -> None:
        """Buffer checked, deduplicated rows (STAGE_SCHEMA) and their ``date`` column as
        a polars Series; flush the stalest dates once the buffers pass the budget."""
        if good.num_rows == 0:
            return
        self._tick += 1
        # The buffers' own size: Table.nbytes walks every chunk's offsets (0.2 ms a call).
        size = good.get_total_buffer_size()
        for day, part in _by_date(good, days):
            state = self._dates.get(day)
            if state is None:
                state = self._dates[day] = _Date(partition_key(self.bot_id, day))
            share = size * part.num_rows // good.num_rows
            state.buffers.append(part)
            state.size += share
            state.touched = self._tick
            self._size += share
        if self._size > self.budget:
            for day in sorted(self._dates, key=lambda d: self._dates[d].touched):
                if self._size <= self.budget // 2:
                    break
                self._flush(day)

    def finish(self) -> None:
        """Flush every buffer and close every writer."""
        for day in sorted(self._dates):
            self._flush(day)
        self._drain(0)
        for day in list(self._open):
            self._close(day)

    def _flush(self, day: date) -> None:
        state = self._dates[day]
        if not state.buffers:
            return
        table = pa.concat_tables(state.buffers)
        self._size -= state.size
        state.buffers, state.size = [], 0
        self._drain(MAX_PENDING_WRITES - 1)  # bounded: what waits is memory too
        self._pending.append(self._pool.submit(self._write, day, table))

    def _drain(self, left: int) -> None:
        """Wait until at most ``left`` writes are pending; raise what a write met."""
        while len(self._pending) > left:
            self._pending.popleft().result()

    def _write(self, day: date, table: pa.Table) -> None:
        """Sort, drop ids the partition has, add provenance, append a row group."""
        state = self._dates[day]
        # Rows are in file order; sorting by timestamp keeps that order among equal ones.
        stamps = pl.from_arrow(table.column("timestamp"))
        assert isinstance(stamps, pl.Series)
        if not stamps.is_sorted():
            order = pl.DataFrame({"t": stamps, "r": pl.from_arrow(table.column(ROW_NUMBER))})
            table = table.take(order.select(pl.arg_sort_by("t", "r")).to_series().to_arrow())
        if state.existing is None:
            state.existing = existing_ids(self.out, state.folder).to_arrow()
        if len(state.existing):
            new = table.filter(pc.invert(pc.is_in(table.column("id"), value_set=state.existing)))
            self.duplicates += table.num_rows - new.num_rows
            table = new
        if table.num_rows == 0:
            return
        # As microseconds: TimestampScalar.as_py() would import pandas (0.3 s, once).
        first, last = (v.as_py() for v in pc.min_max(table.column("timestamp").cast(pa.int64())).values())
        if state.last_ts is not None and first < state.last_ts:
            state.unsorted = True
        state.last_ts = max(last, state.last_ts) if state.last_ts is not None else last
        rows = table.num_rows
        table = table.select(FILE_SCHEMA.names[:-2]).append_column(
            FILE_SCHEMA.field("source_sha256"), pa.repeat(text_scalar(self.placeholder), rows)
        ).append_column(FILE_SCHEMA.field("source_kind"), pa.repeat(text_scalar(self.source_kind), rows))
        self._writer(day, state).write_table(table)
        state.rows += rows

    def _writer(self, day: date, state: _Date) -> pq.ParquetWriter:
        if state.writer is None:
            if len(self._open) >= MAX_OPEN_WRITERS:
                self._close(next(iter(self._open)))
            path = self.out.temp(f"{len(state.segments)}.parquet", f"{self.token}-")
            state.segments.append(path)
            state.writer = parquet_writer(path, FILE_SCHEMA)
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
        for day in days:  # one at a time: a rebuild holds its date in memory
            state = self._dates[day]
            if len(state.segments) > 1 or state.unsorted:
                self._rebuild(state)
        # Stamping, hashing and fsyncing the files is independent per file and mostly
        # waits on the disk: a few threads. Linking stays in date order.
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="publish") as pool:
            digests = list(pool.map(lambda day: self._seal(self._dates[day].segments[0], sha), days))
        written = []
        for day, digest in zip(days, digests):
            state = self._dates[day]
            target = f"{state.folder}/part-{sha[:16]}.parquet"
            if not self.out.publish(state.segments[0], target):  # it exists: record it as is
                digest = self.out.sha256(target) or ""
            written.append(WrittenFile(target, state.rows, digest))
        self.discard()
        return written

    def _seal(self, path: Path, sha: str) -> str:
        """Stamp a date's final temporary file, make it durable; its sha256."""
        stamp(path, self.placeholder, sha)
        with path.open("rb+") as stream:
            os.fsync(stream.fileno())
        return sha256_file(path)

    def _rebuild(self, state: _Date) -> Path:
        """One sorted file from a date's segments (rare: rows out of time order)."""
        path = self.out.temp("sorted.parquet", f"{self.token}-")
        frame = pl.scan_parquet(state.segments, hive_partitioning=False).collect()
        if state.unsorted:  # stable: equal timestamps keep file order
            frame = frame.sort("timestamp", maintain_order=True)
        with parquet_writer(path, FILE_SCHEMA) as out:
            out.write_table(frame.to_arrow().cast(FILE_SCHEMA))
        for segment in state.segments:
            segment.unlink(missing_ok=True)
        state.segments = [path]
        return path

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
        for state in self._dates.values():
            for segment in state.segments:
                with suppress(OSError):  # cleaning up must not hide the error that got us here
                    segment.unlink(missing_ok=True)
