"""Archive a report CSV of any size: streaming, in bounded memory, with full validation.

The same rows, counts and files as the in-memory reader (:func:`ingest.parse.parser.read_csv_text`
and :func:`ingest.parse.parser.parse_frame`) followed by :func:`ingest.archive.writer.save_report`
(the tests compare them), without holding the file
or its rows in memory. Four threads, each mostly in C code that releases the GIL:

* raw copy: hashes the file and copies it under ``raw/`` in one pass, then fsyncs it
  (:class:`ingest.archive.rawcopy.RawCopy`);
* reader: pyarrow parses the CSV, all text, a big file in segments on two threads
  (:class:`ingest.parse.csvstream.CsvBatches`);
* this thread: casts and checks the short columns of each batch, in Arrow when every
  cell is in the export's own form (:func:`ingest.parse.validate.judge_arrow`), else in polars
  (:func:`ingest.parse.validate.judge`), drops ids seen earlier in the file
  (:class:`ingest.archive.dedup.IdSet`), puts good rows together in Arrow without copying the
  text (:func:`ingest.parse.arrowrows.good_table`), rejected rows to the quarantine's file;
* Parquet writer: per-date buffers flushed as sorted row groups into temporary files
  (:class:`ingest.archive.staging.DateFiles`). Rows carry ``source_sha256``; as the hash is
  only known at the end, a same-length stand-in is written and stamped at commit.

Nothing is visible in the archive until :meth:`StagedReport.commit`, which links the
raw copy, then the data files, then the quarantine into place, and writes the manifest
last. A file refused on its last byte (ragged, not UTF-8, cut inside a quote) leaves
nothing behind. Counts add up: ``rows_read == written + duplicates + rejected``.

Example::

    staged = stage_csv(root, path, bot_id="bot-1")      # look before committing
    if store.attachment(staged.sha256) is None:
        staged.commit(raw_name=path.name, provenance=...)
    else:
        staged.discard()
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

from ingest.archive.commit import Attachment, SaveResult, commit
from ingest.archive.conflicts import ArchivedIds, Collisions, Conflict, conflict_record
from ingest.archive.dedup import IdSet
from ingest.archive.layout import raw_key
from ingest.archive.rawcopy import RawCopy, Source
from ingest.archive.rejects import RejectedRows
from ingest.archive.staging import DateFiles
from ingest.archive.storage import Storage, as_storage
from ingest.errors import OutputError, ReportRejected
from ingest.parse.arrowrows import FILE_SCHEMA, good_table
from ingest.parse.csvstream import MAX_RECORD_BYTES, CsvBatches, RecordTooLong
from ingest.parse.header import HEADER_BYTES, read_header
from ingest.parse.identity import CONTENT_COLUMNS, content_hashes
from ingest.parse.validate import (
    ColumnPlan,
    Verdict,
    judge,
    judge_arrow,
    needed_columns,
    plan_columns,
    rejected_rows,
)

#: Rows buffered per date before the stalest dates are written out (Arrow bytes). With
#: this budget the whole process peaked at 340-390 MiB on the 1 GB benchmark file
#: (libraries about 100 MiB; reader, writer and allocators the rest): bench/README.md.
MEMORY_BUDGET = 32 << 20


@dataclass
class StagedReport:
    """A report read and checked, its files written under temporary names: not yet
    in the archive. :meth:`commit` publishes it, :meth:`discard` forgets it."""

    storage: Storage
    bot_id: str
    rows_read: int
    rows_rejected: int
    duplicates_in_file: int
    extra_columns: list[str]
    files: DateFiles
    rejected: RejectedRows
    raw: RawCopy
    #: Rows refused because their id is archived (or earlier in the report) with other
    #: content: quarantined (counted in rows_rejected), recorded by the caller.
    conflicts: list[Conflict] = field(default_factory=list)
    #: The messages table as staging read it: the commit updates it rather than open it again.
    table: DeltaTable | None = None

    @property
    def sha256(self) -> str:
        """sha256 of the report's bytes."""
        return self.raw.sha256()

    @property
    def rows_valid(self) -> int:
        """Rows that passed every check, once per id (written or already archived)."""
        return self.rows_read - self.rows_rejected - self.duplicates_in_file

    def commit(self, *, raw_name: str, provenance: dict[str, Any]) -> SaveResult:
        """Publish raw bytes, data files, quarantine; then the manifest (the commit record)."""
        sha = self.raw.wait()
        result = SaveResult(
            self.rows_read,
            self.files.rows,
            self.duplicates_in_file + self.files.duplicates,
            self.rows_rejected,
            rows_conflict=len(self.conflicts),
            conflicts=[conflict_record(c, sha) for c in self.conflicts],
        )

        def data() -> None:
            result.files = self.files.publish(sha)
            self.rejected.publish(sha)
            self.raw.discard()

        try:
            return commit(
                self.storage,
                result,
                Attachment(self.bot_id, sha, raw_name, self.raw.size),
                raw=lambda: self.storage.publish(self.raw.tmp, raw_key(self.bot_id, sha, raw_name)),
                data=data,
                extra_columns=self.extra_columns,
                provenance=provenance,
                schema=FILE_SCHEMA,
                discard=self.discard,
                opened=self.table,
            )
        finally:
            give_back_memory()

    def discard(self) -> None:
        """Remove every temporary file; the archive is left as it was."""
        self.files.discard()
        self.rejected.discard()
        self.raw.discard()
        give_back_memory()


@functools.cache
def _libc() -> Any:
    """glibc's allocator controls (None elsewhere: musl has neither call). Capped at two
    arenas the first time: each thread that allocates (the Parquet writer, merges,
    publishing, polars', Arrow's and delta-rs's pools) otherwise gets an arena of its own,
    up to 16 on 2 cores, and the freed memory scattered over them is never handed back."""
    import ctypes  # here: only a command that archives needs it

    libc = ctypes.CDLL(None)
    if not hasattr(libc, "malloc_trim") or not hasattr(libc, "mallopt"):
        return None
    libc.mallopt(-8, 2)  # M_ARENA_MAX
    return libc


def give_back_memory() -> None:
    """Return the memory a report freed to the system (``malloc_trim``), so that a run of
    many reports peaks as its biggest report does, not as their sum: the load test's job
    grew about 6 MiB a report (docs/RELIABILITY.md)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def stage_csv(
    root: Storage | Path,
    source: Source,
    *,
    bot_id: str,
    source_sha256: str | None = None,
    window: tuple[date, date] | None = None,
    source_kind: str = "csv",
    memory_budget: int = MEMORY_BUDGET,
    on_rows: Callable[[int], None] | None = None,
) -> StagedReport:
    """Read, check and stage a report CSV (a path, bytes, or a binary file object).

    ``source_sha256`` is computed while copying when not given; ``on_rows(n)`` is told
    of each batch read (for a progress bar). Raises
    :class:`ReportRejected` (nothing staged) for a file that cannot be archived whole.
    """
    _libc()  # the arenas capped before the staging threads allocate
    storage = as_storage(root)
    raw = RawCopy(storage, bot_id, source, source_sha256)
    try:
        stage = functools.partial(
            _stage,
            storage,
            raw.start(),
            raw,
            bot_id=bot_id,
            window=window,
            source_kind=source_kind,
            budget=memory_budget,
            on_rows=on_rows,
        )
        try:
            return stage(block=None)
        except RecordTooLong:  # rare: read again, with room for the longest record
            return stage(block=MAX_RECORD_BYTES)
    except BaseException:
        raw.discard()
        raise


def _stage(
    storage: Storage,
    source: Path | bytes,
    raw: RawCopy,
    *,
    bot_id: str,
    window: tuple[date, date] | None,
    source_kind: str,
    budget: int,
    block: int | None,
    on_rows: Callable[[int], None] | None = None,
) -> StagedReport:
    names = read_header(_head(source))
    batches = CsvBatches(source, names, **({"block_bytes": block} if block else {}))
    plan = plan_columns(batches.names)
    files = DateFiles(storage, bot_id, budget=budget, source_kind=source_kind)
    rejected = RejectedRows(storage)
    ids = IdSet()
    # Exactly once over the whole bot: ids archived on any day, read once (ingest.archive.conflicts).
    archived = ArchivedIds.load(storage, bot_id)
    collisions = Collisions(storage, bot_id)
    needed = needed_columns(plan)
    read = duplicates = 0
    conflicts: list[Conflict] = []
    try:
        with batches:
            for table in batches:
                # The usual batch is cast in Arrow; any other is judged in polars (one
                # chunk per column: polars converts it several times faster).
                verdict = judge_arrow(table, plan, first_row=read + 1, window=window) or judge(
                    _polars(table.select(needed).combine_chunks()), plan, first_row=read + 1, window=window
                )
                read += table.num_rows
                if on_rows is not None:
                    on_rows(table.num_rows)
                ok = None if verdict.all_good else verdict.reason.is_null()
                if ok is not None:
                    bad = _polars(table.filter(pc.invert(ok.to_arrow())))
                    rejected.add(rejected_rows(bad, plan, verdict))
                id_column = verdict.typed_column("id")
                good_ids = id_column if ok is None else id_column.filter(ok)
                first = ids.first_seen(good_ids)
                hit = archived.contains(good_ids.to_numpy()) if archived else None
                if hit is not None and hit.any():
                    first = first & pl.Series(~hit)
                unique = int(first.sum())
                if unique < first.len():  # an id seen before: kept aside, judged at the end
                    _set_aside(collisions, table, plan, verdict, ok, good_ids, first, hit)
                keep = _keep(ok, first, unique)
                days = verdict.date if keep is None else verdict.date.filter(keep)
                files.add(good_table(table, plan, verdict, keep), days)
        files.finish()
        for conflicting, found in collisions.resolve(archived, files.staged_paths()):
            duplicates += found.duplicates
            conflicts.extend(found.conflicts)
            rejected.add(conflicting)
        collisions.discard()
    except BaseException as err:
        files.discard()
        rejected.discard()
        collisions.discard()
        if isinstance(err, OSError):
            raise OutputError(
                f"cannot write under {storage.describe()}: {err.strerror or err}", hint="INGEST_OUTPUT__ROOT"
            ) from None
        raise
    return StagedReport(
        storage,
        bot_id,
        read,
        rejected.rows,
        duplicates,
        list(plan.extra),
        files,
        rejected,
        raw,
        conflicts,
        archived.table,
    )


def _set_aside(
    collisions: Collisions,
    table: pa.Table,
    plan: ColumnPlan,
    verdict: Verdict,
    ok: pl.Series | None,
    good_ids: pl.Series,
    first: pl.Series,
    hit: np.ndarray | None,
) -> None:
    """Keep the batch's colliding good rows (not ``first``) aside: content hash and raw text."""
    again = (~first).to_numpy()
    at = np.flatnonzero(again) if ok is None else ok.arg_true().to_numpy()[again]
    mask = np.zeros(table.num_rows, dtype=bool)
    mask[at] = True
    keep = pl.Series(mask)
    typed = pl.from_arrow(good_table(table, plan, verdict, keep).select(list(CONTENT_COLUMNS)))
    assert isinstance(typed, pl.DataFrame)
    raw = _polars(table.filter(keep.to_arrow()))
    folded = [f.filter(keep) for f in verdict.folded]
    text = raw.with_columns(*folded, *[pl.lit(None, pl.String).alias(c) for c in plan.missing]).select(
        verdict.rows.filter(keep), *plan.raw_columns
    )
    in_file = np.ones(len(at), dtype=bool) if hit is None else ~hit[again]
    collisions.add(text, good_ids.filter(pl.Series(again)), content_hashes(typed), in_file)


def _keep(ok: pl.Series | None, first: pl.Series, unique: int) -> pl.Series | None:
    """Rows to keep: good (``ok``) and first seen (``first``, over the good rows only)."""
    if ok is None:
        return None if unique == first.len() else first
    keep = pl.repeat(False, ok.len(), dtype=pl.Boolean, eager=True)
    return keep.scatter(ok.arg_true(), first)


def _polars(table: pa.Table) -> pl.DataFrame:
    frame = pl.from_arrow(table, rechunk=False)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _head(source: Path | bytes) -> bytes:
    if isinstance(source, bytes):
        return source[: HEADER_BYTES + 1]
    with open(source, "rb") as stream:
        return stream.read(HEADER_BYTES + 1)


__all__ = ["MEMORY_BUDGET", "ReportRejected", "StagedReport", "stage_csv"]
